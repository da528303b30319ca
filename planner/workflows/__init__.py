"""The workflows of the public API, each a request in and a result out: estimate (one configuration),
inference (a serving footprint), solve (the optimal plan), review (a configuration judged) and compare
(every GPU × price option). `inputs.py` is the one reading of flags over a scenario they share."""
