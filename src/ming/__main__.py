from ming.cli.main import main

raise SystemExit(main())
