"""Activities: each class does one kind of side effect and receives its client."""
