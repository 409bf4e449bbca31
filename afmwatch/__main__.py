from afmwatch.cli import main

raise SystemExit(main())
