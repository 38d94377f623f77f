"""llmbudget operator: reconciles TokenBudgets and ModelRoutes into the gateway's config."""

__version__ = "0.1.0"
