"""Tests of the technician CLI: doctor, outbox inspection, manual punches."""
