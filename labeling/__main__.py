from labeling.cli import main

raise SystemExit(main())
