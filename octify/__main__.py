"""``python -m octify``: the command line (what ``octify finetune --nproc`` relaunches)."""

from .cli.app import main

if __name__ == "__main__":
    main()
