"""Platform adapters: turn platform events into core commands and render the results."""
