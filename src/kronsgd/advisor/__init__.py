"""``kronsgd.inspect``: is the data Kronecker-structured, and what would each way of learning cost."""
