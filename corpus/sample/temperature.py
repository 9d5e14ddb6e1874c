"""Temperature conversions for a weather dashboard."""

from typing import List, Optional, Union

ABSOLUTE_ZERO_C = -273.15


def convert_readings(readings: List[Union[int, float]], *, to: str = "F", offset: Optional[float] = None) -> List[Optional[float]]:
    """Convert Celsius readings to Fahrenheit ("F") or Kelvin (anything else).

    An optional calibration ``offset`` (in Celsius) is added first. Readings
    below absolute zero are sensor errors and become None. Results are
    rounded to 1 decimal.

    >>> convert_readings([0, 100, -300], to="F")
    [32.0, 212.0, None]
    >>> convert_readings([10], to="K", offset=0.5)
    [283.6]
    """
    converted = []
    for celsius in readings:
        value = celsius + (offset or 0.0)
        if value < ABSOLUTE_ZERO_C:
            converted.append(None)
        elif to == "F":
            converted.append(round(value * 9 / 5 + 32, 1))
        else:
            converted.append(round(value - ABSOLUTE_ZERO_C, 1))
    return converted
