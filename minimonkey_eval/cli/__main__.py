from minimonkey_eval.cli import main

raise SystemExit(main())
