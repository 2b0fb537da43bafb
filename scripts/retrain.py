"""Retrain a fixed architecture with CTC (Lightning CLI); the same as `supernet retrain`.

python scripts/retrain.py --arch tdnn_d --data CORPUS --out runs/tdnn_d
"""

import sys

from supernet.commands.retrain import main

if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
