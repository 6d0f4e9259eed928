from fluxrate_sandbox.chaos.runner import main

raise SystemExit(main())
