"""`iswt report`'s parts: discovery, reading and recomputation, section builders, and the HTML page."""
