"""The workflows of the public API: estimate, solve, review and compare."""
