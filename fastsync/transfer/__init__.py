"""Transfers (the Sqoop half): `fastsync import` of relational tables into columnar files."""
