"""The bottom of the house: exceptions, argument checks and files written atomically.

Nothing here imports another infnet package.
"""
