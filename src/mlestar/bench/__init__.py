"""``mlestar bench``: mlestar over a suite of competitions and seeds, graded, with medals."""
