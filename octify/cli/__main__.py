"""``python -m octify.cli``: the command line (what ``octify finetune --nproc`` relaunches)."""

from .app import main

if __name__ == "__main__":
    main()
