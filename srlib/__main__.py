from srlib.cli import main

raise SystemExit(main())
