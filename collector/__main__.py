from tracehouse.collector.cli import main

raise SystemExit(main())
