"""Pure decisions: packing, fair share, preemption, budgets, scaling. Imports no ray, no kubernetes,
so the live controllers and the simulator run the very same code."""
