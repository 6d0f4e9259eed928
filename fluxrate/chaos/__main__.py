from fluxrate.chaos.runner import main

raise SystemExit(main())
