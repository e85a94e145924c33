"""Words for ds01's package tests."""

GREETING = "hello from a ds01 package layer"
