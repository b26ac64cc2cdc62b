"""Show a stream in a window: an ordinary OpenCV loop (python viewer.py [cam0]; q quits)."""
import sys

import cv2
import shmlane

cap = shmlane.VideoCapture(sys.argv[1] if len(sys.argv) > 1 else "cam0")  # was cv2.VideoCapture(0)
while cap.isOpened():
    ok, frame = cap.read()  # the newest frame, an array of our own to draw on
    if not ok:
        break  # no frame for 2 s: the camera is gone
    fps = cap.get(cv2.CAP_PROP_FPS)
    cv2.putText(frame, f"{fps:.1f} fps", (10, 30), cv2.FONT_HERSHEY_SIMPLEX, 1, (0, 255, 255), 2)
    try:
        cv2.imshow("shmlane", frame)
    except cv2.error:  # opencv-python-headless: no windows
        sys.exit("viewer: this OpenCV has no windows (opencv-python-headless); install the one "
                 "that has: pip uninstall opencv-python-headless; pip install opencv-python")
    if cv2.waitKey(1) & 0xFF == ord("q"):
        break
cap.release()
