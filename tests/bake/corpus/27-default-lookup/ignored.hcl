target "default" { tags = ["never"] }
