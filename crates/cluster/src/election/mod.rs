//! Leader election with openraft 0.9 on a runtime of its own.
