SELECT * FROM {target} ORDER BY {order_key};
