import pathlib
import time

state = pathlib.Path("/srv/scribbler-state.txt")
while True:
    state.write_text(str(time.time()))
    time.sleep(1)
