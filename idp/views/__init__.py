"""One blueprint per flow; views parse, call a service, render."""
