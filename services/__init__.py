"""newsflow services: each one a thin FastStream app over a module of plain functions."""
