from responder.cli import main

raise SystemExit(main())
