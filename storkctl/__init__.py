"""`storkctl`: the command line for day-2 work with stork-py."""
