"""`python -m portraitcolor` (and `torchrun -m portraitcolor train ...`)."""

from .cli import main

if __name__ == "__main__":
    main()
