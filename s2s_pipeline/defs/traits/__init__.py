"""The customer trait table, its checks and the rules it is computed with."""
