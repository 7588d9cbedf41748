"""Sensors: MaxwellJobSensor."""
