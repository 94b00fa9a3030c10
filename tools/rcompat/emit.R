# Results of R calls, written for tools/rcompat/run.py: one record per call.
#   record: name, status (0 value, 1 NULL, 2 error, 3 list), then
#     value: ndim, dims, values (double; NA and NaN both NaN), is-NA flags (NA, not NaN)
#     error: the message;  list: its length, then one record per element (name "<name>[i]")
.rc_con <- NULL

rc_open <- function(path) {
  .rc_con <<- file(path, "wb")
}

rc_str <- function(s) {
  b <- charToRaw(enc2utf8(s))
  writeBin(length(b), .rc_con)
  writeBin(b, .rc_con)
}

rc_emit <- function(name, x) {
  rc_str(name)
  if (inherits(x, "rc_error")) {
    writeBin(2L, .rc_con)
    rc_str(as.character(x))
  } else if (is.null(x)) {
    writeBin(1L, .rc_con)
  } else if (is.list(x)) {
    writeBin(3L, .rc_con)
    writeBin(length(x), .rc_con)
    for (i in seq_along(x)) rc_emit(sprintf("%s[%d]", name, i), x[[i]])
  } else {
    writeBin(0L, .rc_con)
    d <- dim(x)
    if (is.null(d)) d <- length(x)
    writeBin(length(d), .rc_con)
    writeBin(as.integer(d), .rc_con)
    writeBin(as.double(x), .rc_con)
    writeBin(as.integer(is.na(x) & !is.nan(x)), .rc_con)
  }
  invisible(NULL)
}

# Run a call; an error becomes a record of its message.
rc <- function(name, expr) {
  x <- tryCatch(suppressWarnings(expr),
                error = function(e) structure(conditionMessage(e), class = "rc_error"))
  rc_emit(name, x)
}
