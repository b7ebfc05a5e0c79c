import time

from importfail.settings import DATABASE_URL

while DATABASE_URL:
    time.sleep(1)
