"""Operators: MaxwellSubmitJobOperator."""
