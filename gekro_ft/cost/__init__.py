"""What an output costs: the price table, the cost model, and the cost report."""
