# Operators compare times of stages, heartbeats and logs: the admin shows them to the second, in
# one unambiguous order. Input formats are Django's own (django/conf/locale/en/formats.py).
DATETIME_FORMAT = "Y-m-d H:i:s"
SHORT_DATETIME_FORMAT = "Y-m-d H:i:s"
TIME_FORMAT = "H:i:s"
DATE_FORMAT = "Y-m-d"
SHORT_DATE_FORMAT = "Y-m-d"
