"""The review page: operators check and correct the daemon's decisions in a browser (`afmwatch review`)."""
