"""Real uvicorn processes on loopback, one worker or several sharing Redis."""
