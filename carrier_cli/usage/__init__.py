"""What model calls cost: one record per provider attempt, prices, budgets and metrics.

`records` is the vocabulary every layer shares (the model providers emit `CallRecord`s, the
runtime says what a call is for with `calling(...)`, the store persists them); it imports
only the standard library, so the llm layer can depend on it without depending on memory.
"""
