import Foundation
import Testing
import Warren
import WarrenAMQP
import WarrenTestSupport
