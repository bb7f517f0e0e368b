"""Test helpers shared by the suites: broker subscriber, waiting on conditions."""
