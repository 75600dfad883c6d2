"""A small SQLite database for the demo: table `orders`, N rows (default 1 000 000)."""
import os
import sqlite3
import sys

path = sys.argv[1]
n = int(sys.argv[2]) if len(sys.argv) > 2 else 1_000_000
if os.path.exists(path):
    os.unlink(path)
db = sqlite3.connect(path)
db.execute("CREATE TABLE orders (id INTEGER PRIMARY KEY, customer TEXT, amount NUMERIC(12, 2), created DATETIME)")
db.executemany("INSERT INTO orders VALUES (?, ?, ?, ?)",
               ((i, "customer-%d" % (i % 9973), "%d.%02d" % (i % 100000, i % 100), "2026-01-01 00:00:00") for i in range(n)))
db.commit()
db.close()
