from inbox_allocation.cli import main

raise SystemExit(main())
