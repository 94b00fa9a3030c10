"""TensorFlowDataGenerator in real TF1 graph mode (each iterator type), TensorFlowV2DataGenerator over
finite and repeated datasets, and as_tf feeding Keras."""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf

import awkgen
from awkgen.datasets import load_digits_batch
from awkgen.frameworks import TensorFlowDataGenerator, TensorFlowV2DataGenerator, as_tf
from tests.conftest import as_array

tf1 = tf.compat.v1


def labels_of(gen, n):
    return [gen.get_batch()[1].tolist() for _ in range(n)]


# 10 samples in batches of 4: a pass is [0..3] [4..7] [8, 9]; y = 10 * x
PASSES = [[0, 10, 20, 30], [40, 50, 60, 70], [80, 90]] * 2 + [[0, 10, 20, 30]]


def graph_dataset(n):
    x = tf.range(n, dtype=tf.int64)
    return tf.data.Dataset.from_tensor_slices((x, x * 10)).batch(4)


@pytest.fixture
def graph():
    graph = tf.Graph()
    sessions = []

    def session():
        sessions.append(tf1.Session(graph=graph))
        return sessions[-1]

    yield graph, session
    for sess in sessions:
        sess.close()


def test_tf1_initializable_iterator_loops_and_builds_its_op_once(graph):
    graph, session = graph
    with graph.as_default():
        n = tf1.placeholder(tf.int64, shape=[])
        iterator = tf1.data.make_initializable_iterator(graph_dataset(n))
    sess = session()
    gen = TensorFlowDataGenerator(sess, iterator, "initializable", {n: 10}, size=10, batch_size=4)
    ops = len(graph.get_operations())
    assert labels_of(gen, 7) == PASSES  # the first call initialises, each end of pass re-initialises
    assert len(graph.get_operations()) == ops  # ART adds a get_next() op per call
    x, y = gen.get_batch()
    assert isinstance(x, np.ndarray) and x.dtype == np.int64


def test_tf1_reinitializable_iterator_loops(graph):
    graph, session = graph
    with graph.as_default():
        dataset = graph_dataset(10)
        iterator = tf1.data.Iterator.from_structure(tf1.data.get_output_types(dataset),
                                                    tf1.data.get_output_shapes(dataset))
        init = iterator.make_initializer(dataset)
    gen = TensorFlowDataGenerator(session(), iterator, "reinitializable", init, size=10, batch_size=4)
    ops = len(graph.get_operations())
    assert labels_of(gen, 7) == PASSES
    assert len(graph.get_operations()) == ops


def test_tf1_feedable_iterator_loops(graph):
    graph, session = graph
    with graph.as_default():
        dataset = graph_dataset(10)
        handle = tf1.placeholder(tf.string, shape=[])
        iterator = tf1.data.Iterator.from_string_handle(handle, tf1.data.get_output_types(dataset),
                                                        tf1.data.get_output_shapes(dataset))
        dataset_iterator = tf1.data.make_initializable_iterator(dataset)
        string_handle = dataset_iterator.string_handle()
    sess = session()
    feed = {handle: sess.run(string_handle)}
    gen = TensorFlowDataGenerator(sess, iterator, "feedable", (dataset_iterator, feed), size=10, batch_size=4)
    ops = len(graph.get_operations())
    assert labels_of(gen, 7) == PASSES
    assert len(graph.get_operations()) == ops


@pytest.mark.parametrize("iterator_type, iterator_arg, error, message", [
    ("one-shot", {}, TypeError, r"Expected iterator_type in \('initializable', 'reinitializable', 'feedable'\)"),
    ("initializable", None, TypeError, "Expected iterator_arg to be the initializer's feed_dict"),
    ("reinitializable", {}, TypeError, r"Expected iterator_arg to be the init op"),
    ("feedable", ({}, {}), TypeError, r"Expected iterator_arg to be a tuple \(dataset_iterator, feed_dict\)"),
])
def test_tf1_arguments_are_checked(graph, iterator_type, iterator_arg, error, message):
    graph, session = graph
    with graph.as_default():
        iterator = tf1.data.make_initializable_iterator(graph_dataset(10))
    with pytest.raises(error, match=message):
        TensorFlowDataGenerator(session(), iterator, iterator_type, iterator_arg, size=10, batch_size=4)
    with pytest.raises(TypeError, match="Expected iterator to be a tf.compat.v1.data.Iterator"):
        TensorFlowDataGenerator(session(), [], "initializable", {}, size=10, batch_size=4)


def test_tf2_finite_dataset_restarts():
    gen = TensorFlowV2DataGenerator(graph_dataset(10), size=10, batch_size=4)
    assert labels_of(gen, 7) == PASSES
    x, y = gen.get_batch()
    assert isinstance(x, np.ndarray) and isinstance(y, np.ndarray)


def test_tf2_repeated_dataset_flows_on():
    gen = TensorFlowV2DataGenerator(graph_dataset(10).repeat(), size=10, batch_size=4)
    assert labels_of(gen, 7) == PASSES


def test_tf2_only_a_dataset_is_accepted():
    with pytest.raises(TypeError, match=r"Expected iterator to be a tf.data.Dataset. Received: \[\] \(list\)"):
        TensorFlowV2DataGenerator([], size=10, batch_size=4)


def test_as_tf_infers_its_spec_from_a_batch_it_keeps():
    with awkgen.DataGenerator(as_array, np.arange(7), np.arange(7) * 10, batch_size=3, shuffle=False) as gen:
        dataset = gen.as_tf()
        assert (gen.epoch, gen.step) == (0, 1)  # one batch read for the spec...
        x_spec, y_spec = dataset.element_spec
        assert x_spec.shape.as_list() == [None] and x_spec.dtype == tf.int64
        assert dataset.cardinality().numpy() == 3
        assert [y.numpy().tolist() for _, y in dataset] == [[0, 10, 20], [30, 40, 50], [60]]  # ...and kept
        assert [y.numpy().tolist() for _, y in dataset] == [[0, 10, 20], [30, 40, 50], [60]]  # next epoch


def test_as_tf_with_a_given_spec_reads_nothing_ahead():
    spec = (tf.TensorSpec([None, 2], tf.float32),)
    with awkgen.DataGenerator(lambda ids: np.ones((len(ids), 2), "float32"), list(range(5)), batch_size=2) as gen:
        dataset = as_tf(gen, output_signature=spec)
        assert (gen.epoch, gen.step) == (0, 0)
        assert [x.shape.as_list() for (x,) in dataset] == [[2, 2], [2, 2], [1, 2]]


def test_keras_fits_from_as_tf(digits):
    import keras

    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((8, 8, 1)), keras.layers.Flatten(),
                              keras.layers.Dense(10, activation="softmax")])
    model.compile(optimizer=keras.optimizers.Adam(0.05), loss="sparse_categorical_crossentropy")
    with awkgen.DataGenerator(load_digits_batch, digits.train_paths, digits.train_labels, batch_size=100,
                              seed=0) as gen:
        model.fit(gen.as_tf(), epochs=2, verbose=0, shuffle=False)
        assert (gen.epoch, gen.step) == (2, 0)
    predicted = model.predict(digits.x_test, verbose=0).argmax(axis=1)
    assert (predicted == digits.y_test).mean() > 0.5
