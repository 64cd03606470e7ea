"""Rules that drop, reduce and aggregate readings at the edge. One module per rule family."""
