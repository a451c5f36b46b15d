from orchestra_ci.cli import main

raise SystemExit(main())
