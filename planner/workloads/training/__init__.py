"""Training: the layout, its legality rules and the scalar evaluation of one plan."""
