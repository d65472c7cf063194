//! Third-party peers; filled below.
