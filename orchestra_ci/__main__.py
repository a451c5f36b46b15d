from orchestra_ci.cli import main
from orchestra_ci.leave import leave

leave(main())
