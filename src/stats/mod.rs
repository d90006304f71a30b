//! Statistics: pure estimators and tests, no I/O.
