target "frontend" {}
target "backend" {}
